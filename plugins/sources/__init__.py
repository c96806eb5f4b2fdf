"""Built-in data sources: files (jsonl, json, csv, parquet) and Hugging Face `datasets`."""
