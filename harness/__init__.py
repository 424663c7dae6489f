"""launchers and load generators shared by tests/ and bench/"""
