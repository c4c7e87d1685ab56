-- Static group membership: each running poster's Kafka `group.instance.id`, so that a poster
-- restarted on the same host takes the id of the one that died there (and gets its partitions
-- back at once, without waiting for the session timeout), while two posters running side by
-- side never share one (`store::instances::claim_group_instance`). NULL: the poster runs with
-- dynamic membership, or started before this migration.
ALTER TABLE poster_instances ADD COLUMN group_instance_id text;
CREATE INDEX poster_instances_host ON poster_instances (consumer_group, host)
    WHERE stopped_at IS NULL AND group_instance_id IS NOT NULL;
