-- Static group membership: the Kafka `group.instance.id` each poster runs with, for operators.
-- Who holds an id is a session advisory lock, not this column
-- (`store::instances::claim_group_instance`). NULL: the poster runs with dynamic membership, or
-- started before this migration.
ALTER TABLE poster_instances ADD COLUMN group_instance_id text;
