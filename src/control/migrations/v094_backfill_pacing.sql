-- Pacing is its own state: the latency guard slowing chunks down (each followed by a pause) is
-- not a throttle, which holds them back. Rows recorded as throttled by the guard's pacing move.
ALTER TABLE cutover.backfill DROP CONSTRAINT backfill_state_check;
ALTER TABLE cutover.backfill ADD CONSTRAINT backfill_state_check
    CHECK (state IN ('idle','running','throttled','pacing','paused','stopped','done','failed'));
UPDATE cutover.backfill SET state = 'pacing'
 WHERE state = 'throttled' AND reason LIKE 'yielding: %'
   AND reason NOT LIKE 'yielding: re-measuring%';
