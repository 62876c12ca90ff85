-- HL7 MSH-10 of a write-back: a message control id is ST of at most 20 characters (v2.3–2.5), and the write-back
-- id (`payment-<uuid>`) is longer. Each outbox row keeps a 16-character control id derived from it (the first
-- 64 bits of SHA-256 over "<practice id> <write-back id>", upper-case hex; `hl7ControlId` in src/store/payments.ts
-- computes the same), so every retry sends the same MSH-10 and its ACK's MSA-2 is matched against it.
ALTER TABLE writeback_outbox ADD COLUMN control_id text;
UPDATE writeback_outbox
   SET control_id = upper(substr(encode(sha256(convert_to(practice_id::text || ' ' || writeback_id, 'UTF8')), 'hex'), 1, 16));
ALTER TABLE writeback_outbox ALTER COLUMN control_id SET NOT NULL;
-- A collision would let a receiver discard one write-back as a duplicate of another: refuse it loudly instead.
CREATE UNIQUE INDEX writeback_outbox_control_idx ON writeback_outbox (practice_id, control_id);

-- Refund requests may carry the client's Idempotency-Key: the same key (per practice) returns the first request's
-- result and starts no second refund; `request_hash` is what the first request asked (payment, amount, reason),
-- so the same key with a different request is refused.
ALTER TABLE payment_refunds
  ADD COLUMN idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  ADD COLUMN request_hash text;
CREATE UNIQUE INDEX payment_refunds_idempotency_idx ON payment_refunds (practice_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
