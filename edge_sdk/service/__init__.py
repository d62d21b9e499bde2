"""Running edge-sdk unattended: the service loop, systemd notification and watchdog."""
