from scripts.bench.cli import app

app()
