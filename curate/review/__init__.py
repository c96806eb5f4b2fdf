"""The human review queue that gates training: candidates in `<run dir>/review.sqlite`, the
terminal review, and the decisions the `review` stage turns into kept, rejected or pending
records."""
