"""HTTP routes, one module per topic, each exposing ``router``; ``create_app`` includes them."""
