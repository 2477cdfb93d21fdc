-- Schedules declared as code (schedules/*.toml, applied by `dtq schedules sync`) carry
-- the file they came from; sync creates, updates and deletes only those, so a schedule
-- made through the API is never removed by a sync. NULL: created through the API.
-- Independent of 0002: it touches only dtq_schedules.
ALTER TABLE dtq_schedules ADD COLUMN IF NOT EXISTS source text;
