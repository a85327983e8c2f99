-- Artifortress test bed schema, part 3: outbox delivery, search index jobs, GC runs.
-- Re-runnable.

create index if not exists idx_outbox_pending
  on outbox_events (available_at)
  where delivered_at is null;

create table if not exists search_index_jobs (
  job_id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(tenant_id),
  version_id uuid not null references package_versions(version_id) on delete cascade,
  status text not null check (status in ('pending', 'processing', 'completed', 'failed')),
  available_at timestamptz not null default now(),
  attempts int not null default 0 check (attempts >= 0),
  last_error text null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, version_id)
);

create index if not exists idx_search_index_jobs_pending
  on search_index_jobs (status, available_at)
  where status in ('pending', 'processing', 'failed');

create table if not exists gc_runs (
  run_id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references tenants(tenant_id),
  initiated_by_subject text not null,
  mode text not null check (mode in ('dry_run', 'execute')),
  retention_grace_hours int not null check (retention_grace_hours >= 0),
  batch_size int not null check (batch_size > 0),
  started_at timestamptz not null default now(),
  completed_at timestamptz null,
  marked_count int not null default 0,
  candidate_blob_count int not null default 0,
  deleted_blob_count int not null default 0,
  deleted_version_count int not null default 0,
  delete_error_count int not null default 0
);

create index if not exists idx_gc_runs_tenant_started
  on gc_runs (tenant_id, started_at desc);
