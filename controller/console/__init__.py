"""The rollout console: pages for people, served by the controller (see `controller.console.routes`)."""
