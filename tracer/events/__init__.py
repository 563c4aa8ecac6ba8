"""Events: the EventKind enum, flag names, the Event type and the decoder (raw records -> Event)."""
