"""Documents and patient education (issue 20): uploads, downloads, generated documents."""
