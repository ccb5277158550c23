"""MAV: multi-agent verification, candidate solutions scored by aspect verifiers' True/False votes."""
