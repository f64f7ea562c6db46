"""Food volume from one photo: metric depth, support plane, height integration."""
