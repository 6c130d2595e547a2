"""Projects: the only owner of project and name records, the reads agents poll, and hourly
metering."""
