-- Overdraft and credit limits: an account that may not go negative (allow_negative = false) may
-- go down to minus its limit, in its normal side's direction (an asset account's overdraft, a
-- liability account's credit line). The limit zero is the old "never negative". Enforced inside
-- the batch transaction with the balance rows locked, like the no-negative check it extends.
ALTER TABLE accounts
    ADD COLUMN overdraft_limit numeric NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0);
