"""Events: the durable outbox of committed versions and what reads it (subscriptions,
their channels). See ``outbox`` (the rows the stores write with every version),
``dispatcher`` (claims, matches and delivers them: the cursors and leases in ``cursors``,
the matching, sending and retries in ``delivery``) and ``rest_hook`` (the R4 channel)."""
