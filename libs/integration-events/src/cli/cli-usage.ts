export const USAGE = `Usage: nestjs-integration-events <command> [options]

Dead-letter queues (RabbitMQ; RABBITMQ_URL or --url, default amqp://guest:guest@127.0.0.1:5672):
  dlq list <dead-letter-queue> [--limit N]        list dead letters (oldest first, default 50)
  dlq show <dead-letter-queue> <message-id>       everything about one dead letter
  dlq requeue <dead-letter-queue> (<message-id>... | --all)
                                                  send back to the handler's queue; attempts start afresh
  dlq purge <dead-letter-queue> (<message-id>... | --all)
                                                  delete for good

Outbox (PostgreSQL; DATABASE_URL or --database-url; --schema S, --table T as in the module's options):
  outbox list [--status stuck|failed|unroutable|pending|skipped|sent] [--limit N]
                                                  list rows (default: stuck = failed or unroutable)
  outbox retry (<row-id>... | --all-unroutable | --all-failed | --all-stuck)
                                                  make rows due now (unroutable/skipped become pending;
                                                  a row never attempted keeps its later deliverAt)
  outbox skip <row-id>...                         never send these rows (kept as 'skipped')

Every command takes --json for machine-readable output. Arguments after -- are ids, never options
(pass ids from a script that way). Exit codes: 0 done, 1 failed, 2 bad usage.`;
