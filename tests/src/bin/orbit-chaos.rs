//! `just chaos`: a soak anyone can repeat. A stack of its own on the test services (two
//! moving-average replicas, the three sinks, the gateway and the Kafka bridge), a steady
//! open-loop load, and every few seconds a component picked at random is killed with `kill -9`
//! and restarted a moment later. Then the ledger: jobs accepted, recorded per store, lost (goal
//! 0) and duplicated per store. It exits non-zero when any store lost a job or holds one twice.
//!
//! `orbit-chaos [--minutes M] [--rate JOBS_PER_S] [--every SECONDS] [--seed N]`
//! (defaults: 3 minutes, 100 jobs/s, a kill every 5 s, a seed from the clock).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orbit_e2e::ledger::{whole_stack, Ledger};
use orbit_e2e::load::Load;
use orbit_e2e::{Clients, Proc};

struct Options {
    minutes: f64,
    rate: u32,
    every: f64,
    seed: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        minutes: 3.0,
        rate: 100,
        every: 5.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => options.minutes = value.parse().context("--minutes")?,
            "--rate" => options.rate = value.parse().context("--rate")?,
            "--every" => options.every = value.parse().context("--every")?,
            "--seed" => options.seed = value.parse().context("--seed")?,
            _ => bail!("unknown flag {flag} (--minutes, --rate, --every, --seed)"),
        }
    }
    Ok(options)
}

/// xorshift64*: enough randomness to pick victims, and a run is repeated by its seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let clients = Clients::connect().await?;
    let (mut stack, bridge) = whole_stack(&clients).await?;

    eprintln!(
        "chaos: {} min at {} jobs/s, a kill every {} s, seed {}",
        options.minutes, options.rate, options.every, options.seed
    );
    let mut dice = Dice(options.seed.max(1));
    let load = Load::start(&clients, &stack, options.rate);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(options.minutes * 60.0);
    let mut kills: Vec<(String, u32)> = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs_f64(options.every)).await;
        let processes: Vec<&mut Proc> = stack.processes_mut().collect();
        let count = processes.len();
        let Some(victim) = processes.into_iter().nth(dice.below(count)) else {
            continue;
        };
        let down = Duration::from_millis(200 + dice.below(2_800) as u64);
        victim.kill_hard()?;
        tokio::time::sleep(down).await;
        victim.restart()?;
        eprintln!(
            "{:>6.1} s  killed {:<20} down {:>4} ms  accepted so far {}",
            started.elapsed().as_secs_f64(),
            victim.name,
            down.as_millis(),
            load.accepted().len()
        );
        match kills.iter_mut().find(|(name, _)| *name == victim.name) {
            Some((_, n)) => *n += 1,
            None => kills.push((victim.name.clone(), 1)),
        }
    }
    let outcome = load.stop().await?;
    eprintln!(
        "load stopped after {:.0} s; settling (up to 3 minutes)",
        started.elapsed().as_secs_f64()
    );
    let ledger =
        Ledger::of_whole_stack(&clients, &outcome, &bridge, Duration::from_secs(180)).await?;
    let kills: Vec<String> = kills.iter().map(|(n, k)| format!("{n} x{k}")).collect();
    println!("kills: {}", kills.join(", "));
    println!(
        "submit tries that failed and were retried: {}; refused as invalid: {}",
        outcome.failed_tries(),
        outcome.rejected
    );
    print!("{ledger}");
    if !ledger.is_whole() {
        bail!("the ledger does not balance");
    }
    Ok(())
}
