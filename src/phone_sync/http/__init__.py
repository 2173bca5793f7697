"""HTTP plumbing shared by the FHIR and Sheets hooks: pacing and retry timing."""
