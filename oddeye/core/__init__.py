"""Shared vocabulary of oddeye: types, errors, config, metrics. Imports no head."""
