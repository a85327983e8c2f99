-- Artifortress test bed seed data: one tenant, one repo, a few packages / versions / blobs,
-- outbox events and search jobs, so that every ops-summary counter is non-zero.
-- Re-runnable: fixed ids + "on conflict do nothing" / "where not exists".
--
-- Counters right after seeding (before any worker sweep):
--   pendingOutboxEvents 4, availableOutboxEvents 3, oldestPendingOutboxAgeSeconds >= 600,
--   failedSearchJobs 1, pendingSearchJobs 3 (2 pending + 1 processing), incompleteGcRuns 1,
--   recentPolicyTimeouts24h 1.

\set ON_ERROR_STOP on

insert into tenants (slug, name) values ('default', 'Default tenant')
on conflict (slug) do nothing;

insert into repos (repo_id, tenant_id, repo_key, repo_type)
select 'a0000000-0000-4000-8000-000000000001', tenant_id, 'libs-release', 'local'
from tenants where slug = 'default'
on conflict do nothing;

insert into packages (package_id, tenant_id, repo_id, package_type, namespace, name)
select v.id::uuid, r.tenant_id, r.repo_id, v.ptype, v.ns, v.name
from repos r,
     (values ('b0000000-0000-4000-8000-000000000001', 'maven', 'com.example', 'core'),
             ('b0000000-0000-4000-8000-000000000002', 'npm', null, 'left-pad'),
             ('b0000000-0000-4000-8000-000000000003', 'generic', null, 'tool')) as v(id, ptype, ns, name)
where r.repo_id = 'a0000000-0000-4000-8000-000000000001'
on conflict do nothing;

insert into blobs (digest, length_bytes, storage_key)
values (repeat('a', 64), 1024, 'blobs/sha256/' || repeat('a', 64)),
       (repeat('b', 64), 2048, 'blobs/sha256/' || repeat('b', 64)),
       (repeat('c', 64), 4096, 'blobs/sha256/' || repeat('c', 64))
on conflict do nothing;

insert into package_versions (version_id, tenant_id, repo_id, package_id, version, state, published_at, created_by_subject)
select v.id::uuid, p.tenant_id, p.repo_id, p.package_id, v.version, v.state,
       case when v.state = 'published' then now() end, 'seed'
from packages p
join (values ('c0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001', '1.0.0', 'published'),
             ('c0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000001', '1.1.0', 'published'),
             ('c0000000-0000-4000-8000-000000000003', 'b0000000-0000-4000-8000-000000000002', '2.0.0', 'draft'),
             ('c0000000-0000-4000-8000-000000000004', 'b0000000-0000-4000-8000-000000000003', '0.1.0', 'published'))
  as v(id, package_id, version, state) on p.package_id = v.package_id::uuid
on conflict do nothing;

insert into artifact_entries (version_id, relative_path, blob_digest, checksum_sha256, size_bytes)
values ('c0000000-0000-4000-8000-000000000001', 'core-1.0.0.jar', repeat('a', 64), repeat('a', 64), 1024),
       ('c0000000-0000-4000-8000-000000000002', 'core-1.1.0.jar', repeat('b', 64), repeat('b', 64), 2048),
       ('c0000000-0000-4000-8000-000000000003', 'left-pad-2.0.0.tgz', repeat('c', 64), repeat('c', 64), 4096)
on conflict do nothing;

-- Outbox: 3 due (oldest 10 minutes old), 1 not yet available, 1 already delivered.
insert into outbox_events (event_id, tenant_id, aggregate_type, aggregate_id, event_type, payload,
                           occurred_at, available_at, delivered_at)
select v.id::uuid, t.tenant_id, 'package_version', v.agg, v.etype, '{}'::jsonb,
       now() - v.age, now() - v.age + v.delay, case when v.delivered then now() end
from tenants t,
     (values ('d0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000001', 'version.published', interval '10 minutes', interval '0', false),
             ('d0000000-0000-4000-8000-000000000002', 'c0000000-0000-4000-8000-000000000002', 'version.published', interval '5 minutes', interval '0', false),
             ('d0000000-0000-4000-8000-000000000003', 'c0000000-0000-4000-8000-000000000004', 'version.published', interval '1 minute', interval '0', false),
             ('d0000000-0000-4000-8000-000000000004', 'c0000000-0000-4000-8000-000000000003', 'version.draft_created', interval '0', interval '1 hour', false),
             ('d0000000-0000-4000-8000-000000000005', 'c0000000-0000-4000-8000-000000000001', 'version.created', interval '2 hours', interval '0', true))
  as v(id, agg, etype, age, delay, delivered)
where t.slug = 'default'
on conflict do nothing;

-- Search jobs: 2 pending (one for a draft version, which the worker cannot index),
-- 1 processing (lease not expired), 1 failed.
insert into search_index_jobs (job_id, tenant_id, version_id, status, attempts, last_error)
select v.id::uuid, t.tenant_id, v.version_id::uuid, v.status, v.attempts, v.err
from tenants t,
     (values ('e0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000001', 'pending', 0, null),
             ('e0000000-0000-4000-8000-000000000002', 'c0000000-0000-4000-8000-000000000003', 'pending', 0, null),
             ('e0000000-0000-4000-8000-000000000003', 'c0000000-0000-4000-8000-000000000004', 'processing', 1, null),
             ('e0000000-0000-4000-8000-000000000004', 'c0000000-0000-4000-8000-000000000002', 'failed', 5, 'seed: indexer unavailable'))
  as v(id, version_id, status, attempts, err)
where t.slug = 'default'
on conflict do nothing;

-- GC: one finished run, one still running.
insert into gc_runs (run_id, tenant_id, initiated_by_subject, mode, retention_grace_hours, batch_size,
                     started_at, completed_at)
select v.id::uuid, t.tenant_id, 'seed', v.mode, 24, 100, now() - interval '1 hour',
       case when v.done then now() - interval '50 minutes' end
from tenants t,
     (values ('f0000000-0000-4000-8000-000000000001', 'dry_run', true),
             ('f0000000-0000-4000-8000-000000000002', 'execute', false)) as v(id, mode, done)
where t.slug = 'default'
on conflict do nothing;

-- Policy timeouts: one within 24 h, one older.
insert into audit_log (tenant_id, actor_subject, action, resource_type, resource_id, details, occurred_at)
select t.tenant_id, 'seed', 'policy.timeout', 'package_version', v.rid, '{"seed":true}'::jsonb, now() - v.age
from tenants t,
     (values ('seed-policy-timeout-recent', interval '2 hours'),
             ('seed-policy-timeout-old', interval '3 days')) as v(rid, age)
where t.slug = 'default'
  and not exists (select 1 from audit_log a where a.resource_id = v.rid and a.action = 'policy.timeout');
