"""Dataset tools: raw recordings -> clean clips -> .list (see docs/dataset.md)."""
