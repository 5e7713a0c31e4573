// A real, throwaway PostgreSQL cluster for tests and benchmarks, through scripts/postgres.sh
// (which installs Debian's postgresql when missing). One cluster per test file (initdb costs
// about two seconds), a fresh database per use. Loopback only, trust authentication.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const SCRIPT = fileURLToPath(new URL('../../scripts/postgres.sh', import.meta.url));

function script(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(SCRIPT, args, { timeout: 600_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`postgres.sh ${args[0]} failed: ${stderr}`, { cause: err }));
      else resolve(stdout.trim());
    });
  });
}

/** A port the kernel just handed out on 127.0.0.1 (free now; postgres takes it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

let dbCounter = 0;

export class PgCluster {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  /** initdb (once) and start a cluster in a new temporary folder. */
  static async start(): Promise<PgCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'musig2-pg-'));
    try {
      const port = await freePort();
      await script(['start', dir, String(port)]);
      return new PgCluster(dir, port);
    } catch (err) {
      // A cluster that never started: stop whatever half-started, and leave no folder behind.
      await script(['stop', dir]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** URL of database `db`; `password` is sent but ignored (trust auth), for leak tests. */
  url(db: string, password?: string): string {
    return `postgres://postgres${password ? `:${password}` : ''}@127.0.0.1:${this.port}/${db}`;
  }

  /** A new empty database; returns its URL. */
  async createDatabase(prefix = 'ledger'): Promise<string> {
    const name = `${prefix}_${process.pid}_${++dbCounter}`;
    await this.sql('postgres', `CREATE DATABASE ${name}`);
    return this.url(name);
  }

  /** Runs one statement as the superuser on database `db`. */
  async sql<R extends pg.QueryResultRow = Record<string, unknown>>(
    db: string,
    text: string,
    values: unknown[] = [],
  ): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url(db) });
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end();
    }
  }

  /** Fast shutdown: every connection is terminated (57P01), new ones are refused. */
  async stop(): Promise<void> {
    await script(['stop', this.dir]);
  }

  /** Starts the (stopped) cluster again on the same port. */
  async restart(): Promise<void> {
    await script(['start', this.dir, String(this.port)]);
  }

  /** Stop and delete everything. */
  async destroy(): Promise<void> {
    await this.stop().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The database name in a URL made by {@link PgCluster.url}. */
export function dbName(url: string): string {
  return new URL(url).pathname.slice(1);
}
