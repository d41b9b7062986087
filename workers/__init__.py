"""The runtime: broker and topology, actors, failure policy, store, adapters, archive and CLI."""
