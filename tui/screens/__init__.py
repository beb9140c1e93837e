"""The app's screens: main, node detail, help, SQL console."""
