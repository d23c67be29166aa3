-- Filters of the findings listing that must not scan every open finding.
CREATE INDEX findings_open_by_decision ON findings (decision, score DESC) WHERE resolved_at IS NULL;
CREATE INDEX findings_open_by_due ON findings (due) WHERE resolved_at IS NULL;
