-- Keep the JSON payloads as the text the functions wrote (json, not jsonb). jsonb re-renders
-- numbers as exact decimals (1e308 becomes a 309-digit integer) that JSON readers with 64-bit
-- floats reject, so one extreme value made a whole results page unreadable. json also skips
-- the parse into jsonb's binary form on every insert. Query inside with a cast: metadata::jsonb.
ALTER TABLE inference_results
    ALTER COLUMN input_data TYPE json USING input_data::json,
    ALTER COLUMN output     TYPE json USING output::json,
    ALTER COLUMN error      TYPE json USING error::json,
    ALTER COLUMN metadata   TYPE json USING metadata::json,
    ALTER COLUMN parameters TYPE json USING parameters::json;
ALTER TABLE inference_results
    ALTER COLUMN metadata   SET DEFAULT '{}'::json,
    ALTER COLUMN parameters SET DEFAULT '{}'::json;
