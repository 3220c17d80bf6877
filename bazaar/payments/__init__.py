"""Money: integer minor units and currencies, fees, and the double-entry ledger."""
