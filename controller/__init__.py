"""Application layer: the controller service, turning registry events into rollouts driven to a decision."""
