"""djap's Django app: the models, the job API and the queue engine."""
