"""In-process fakes used by the tests (they implement real protocols, not mocks)."""
