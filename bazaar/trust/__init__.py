"""Trust: reviews, reputation, disputes and notifications (with their models and mail templates)."""
