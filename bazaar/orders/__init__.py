"""Orders: the payloads of the order workflow, who may do what and when, what each transition tells people."""
