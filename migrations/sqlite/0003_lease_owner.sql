-- Graceful shutdown gives back one node's leases; without this index that update scans
-- every waiting job (seconds with a million pending).
CREATE INDEX jobs_lease_owner ON jobs (lease_owner) WHERE state = 'in_flight';
