"""Learned label rules, applied to served answers: how an adapter's training labels are written
(conventions), what a total settles to (settlement), the label memory of recurring senders
(exemplars), confidence calibration, and the per-field confidence thresholds that auto-approve an
answer (thresholds). Learned at training or evaluation time, saved with the
adapter; gold-label scoring lives in backend/scoring/."""
