-- A claim may take a job shortly before it is due (claim-ahead), so that the database round
-- trip is off the firing path. The claim moves next_attempt_at to the lease expiry; the time
-- the call is due is kept here, so the worker knows when to fire and a lease given back on
-- shutdown makes the job due at that time again, never earlier.
ALTER TABLE jobs ADD COLUMN fire_at INTEGER;
