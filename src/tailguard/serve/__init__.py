"""Serving: gateway, deployment queues, replica processes, protocol adapters."""
