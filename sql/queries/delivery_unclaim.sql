-- Deliveries the worker claimed and then handed back unsent, because their endpoint's circuit
-- opened meanwhile (src/delivery/dispatch.rs): pending again and as due as before, the claim's
-- attempt taken back. No ledger row: nothing was attempted.
UPDATE booking_admin.deliveries d SET status = 'pending', attempts = d.attempts - 1, updated_at = now()
WHERE d.id = ANY ($1) AND d.status = 'sending'
