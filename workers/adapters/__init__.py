"""Downstream adapters: how effects reach the ERP, channels, notify and payments systems."""
