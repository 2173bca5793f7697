"""The one HTTP path: session factory (`session`), retries, redirects and masking (`retry`), pacing, URL rules."""
