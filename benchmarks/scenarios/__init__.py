"""The benchmark's scenarios, one module each."""
