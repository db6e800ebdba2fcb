//! The storage boundary, tested directly: both implementations (behind group commit, as the
//! server uses them) must give the same answers.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use herald::domain::{
    Attempt, AttemptOutcome, AttemptRecord, Body, JobState, NewJob, RetryPolicy, SuccessCodes,
    Target,
};
use herald::store::{connect, Inserted, Store};
use uuid::Uuid;

fn new_job(key: Option<&str>, fingerprint: &str, deliver_at: i64) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        namespace: "ns".into(),
        key: key.map(String::from),
        target: Target {
            method: "POST".into(),
            url: "http://127.0.0.1:9/".into(),
            headers: vec![("x-a".into(), "1".into())],
            body: Body::Json(serde_json::json!({"a": 1})),
        },
        retry: RetryPolicy::default(),
        timeout_ms: 1_000,
        success: SuccessCodes::default(),
        follow_redirects: false,
        deliver_at,
        meta: None,
        fingerprint: fingerprint.into(),
    }
}

/// The store and its database guard (which removes a SQLite directory when dropped).
async fn store(b: Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(b).await;
    (connect(&db.database).await.unwrap(), db)
}

fn record(job: &herald::domain::Job, owner: &str, state: JobState, at: i64) -> AttemptRecord {
    AttemptRecord {
        attempt: Attempt {
            id: Uuid::now_v7(),
            job_id: job.id,
            number: job.attempts,
            started_at: at,
            duration_ms: 5,
            request_method: "POST".into(),
            request_url: job.target.url.clone(),
            request_headers: vec![],
            request_body_bytes: 0,
            response_status: Some(500),
            response_headers: vec![],
            response_body: None,
            response_truncated: false,
            error: None,
            outcome: AttemptOutcome::Retrying,
        },
        lease_owner: owner.into(),
        next_state: state,
        next_attempt_at: (state == JobState::Scheduled).then_some(at + 100),
        finished_at: at,
        unsubscribe: None,
    }
}

both_stores! {
    async fn concurrent_creates_with_one_key_make_one_job(b: Backend) {
        let (s, _db) = store(b).await;
        let mut tasks = Vec::new();
        for i in 0..40 {
            let s = s.clone();
            // Half repeat the same request, half send different content under the key.
            let fp = if i % 2 == 0 { "same" } else { "other" };
            tasks.push(tokio::spawn(async move { s.insert_job(&new_job(Some("k"), fp, 0), 0, false).await.unwrap() }));
        }
        let mut created = Vec::new();
        let (mut existing, mut taken) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Inserted::Created(j) => created.push(j),
                Inserted::Existing(_) => existing += 1,
                Inserted::KeyTaken(_) => taken += 1,
            }
        }
        assert_eq!(created.len(), 1);
        assert_eq!(existing + taken, 39);
        assert!(existing >= 19 && taken >= 19);
    }

    async fn many_concurrent_creates_all_commit(b: Backend) {
        let (s, _db) = store(b).await;
        let mut tasks = Vec::new();
        for _ in 0..300 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.insert_job(&new_job(None, "f", 1_000), 0, false).await.unwrap() }));
        }
        let mut ids = HashSet::new();
        for t in tasks {
            let Inserted::Created(j) = t.await.unwrap() else { panic!("not created") };
            assert_eq!(j.state, JobState::Scheduled);
            assert_eq!(j.target.body, Body::Json(serde_json::json!({"a": 1})));
            ids.insert(j.id);
        }
        assert_eq!(ids.len(), 300);
        let claimed = s.claim_due(1_000, 1_000, 1_000, "n", 0).await.unwrap();
        assert_eq!(claimed.len(), 300);
    }

    async fn finished_key_can_be_taken_over(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(first) = s.insert_job(&new_job(Some("k"), "a", 0), 0, false).await.unwrap() else { panic!() };
        // Still waiting: the key is taken even when allowed to take over finished keys.
        assert!(matches!(s.insert_job(&new_job(Some("k"), "b", 0), 0, true).await.unwrap(), Inserted::KeyTaken(_)));
        let mut j = first.clone();
        j.state = JobState::Cancelled;
        j.next_attempt_at = None;
        s.save_job(&j, JobState::Scheduled, 1).await.unwrap().unwrap();
        assert!(matches!(s.insert_job(&new_job(Some("k"), "b", 0), 2, false).await.unwrap(), Inserted::KeyTaken(_)));
        let Inserted::Created(second) = s.insert_job(&new_job(Some("k"), "b", 0), 2, true).await.unwrap() else { panic!() };
        assert_eq!(s.get_job_by_key("ns", "k").await.unwrap().unwrap().id, second.id);
        let old = s.get_job("ns", first.id).await.unwrap().unwrap();
        assert_eq!((old.key, old.state), (None, JobState::Cancelled));
    }

    async fn claims_take_only_due_work_and_reclaim_expired_leases(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(due) = s.insert_job(&new_job(None, "f", 100), 0, false).await.unwrap() else { panic!() };
        s.insert_job(&new_job(None, "f", 10_000), 0, false).await.unwrap();
        assert_eq!(s.next_due_at().await.unwrap(), Some(100));
        assert!(s.claim_due(99, 99, 10, "a", 0).await.unwrap().is_empty());
        let got = s.claim_due(100, 100, 10, "a", 500).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].fire_at, 100);
        let claimed = &got[0].job;
        assert_eq!((claimed.id, claimed.state, claimed.attempts), (due.id, JobState::InFlight, 1));
        // Lease = now + timeout (1 000) + grace (500).
        assert_eq!(claimed.next_attempt_at, Some(1_600));
        assert!(s.claim_due(1_599, 1_599, 10, "b", 500).await.unwrap().is_empty());
        // After expiry another node reclaims it under the same attempt number.
        let again = s.claim_due(1_600, 1_600, 10, "b", 500).await.unwrap();
        let again: Vec<_> = again.into_iter().map(|c| c.job).collect();
        assert_eq!((again.len(), again[0].attempts, again[0].lease_owner.as_deref()), (1, 1, Some("b")));
        // The first owner's late record does not move the job; the new owner's does.
        assert!(!s.record_attempt(&record(claimed, "a", JobState::Succeeded, 1_700), claimed.version).await.unwrap());
        assert!(s.record_attempt(&record(&again[0], "b", JobState::Scheduled, 1_800), again[0].version).await.unwrap());
        let j = s.get_job("ns", due.id).await.unwrap().unwrap();
        assert_eq!((j.state, j.next_attempt_at, j.last_status), (JobState::Scheduled, Some(1_900), Some(500)));
        // Both attempts are history.
        assert_eq!(s.list_attempts(due.id, None, 10).await.unwrap().len(), 2);
    }

    async fn save_is_compare_and_set(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(job) = s.insert_job(&new_job(None, "f", 100), 0, false).await.unwrap() else { panic!() };
        let mut changed = job.clone();
        changed.deliver_at = 5_000;
        changed.next_attempt_at = Some(5_000);
        let saved = s.save_job(&changed, JobState::Scheduled, 1).await.unwrap().unwrap();
        assert_eq!(saved.version, job.version + 1);
        // A second writer holding the old version loses.
        assert!(s.save_job(&changed, JobState::Scheduled, 2).await.unwrap().is_none());
        // A claim bumps the version, so a change read before it loses too.
        let claimed = s.claim_due(5_000, 5_000, 10, "a", 0).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(s.save_job(&saved, JobState::Scheduled, 3).await.unwrap().is_none());
    }

    async fn release_gives_leases_back(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(job) = s.insert_job(&new_job(None, "f", 0), 0, false).await.unwrap() else { panic!() };
        s.claim_due(0, 0, 10, "a", 60_000).await.unwrap();
        assert_eq!(s.release_leases("other", 10).await.unwrap(), 0);
        assert_eq!(s.release_leases("a", 10).await.unwrap(), 1);
        let j = s.get_job("ns", job.id).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts, j.next_attempt_at), (JobState::Scheduled, 0, Some(10)));
    }

    async fn a_created_job_reads_back_as_the_insert_answered(b: Backend) {
        let (s, _db) = store(b).await;
        let mut plain = new_job(None, "p", 1_000);
        plain.target.body = Body::Text("héllo".into());
        plain.meta = Some(serde_json::json!({"m": [1, 2.5, null]}));
        plain.retry = RetryPolicy::Schedule { delays_ms: vec![10, 20] };
        let mut binary = new_job(None, "b", 1_000);
        binary.target.body = Body::Binary(vec![0, 159, 146, 150]);
        let mut empty = new_job(None, "e", 1_000);
        empty.target.body = Body::None;
        let batch: Vec<_> = [plain, binary, empty, new_job(Some("k"), "k", 1_000)]
            .into_iter()
            .map(|job| herald::store::NewJobInsert { job, now: 7, free_finished_key: false })
            .collect();
        let out = s.insert_jobs(&batch).await.unwrap();
        assert_eq!(out.len(), 4);
        for (item, inserted) in batch.iter().zip(out) {
            let Inserted::Created(j) = inserted else { panic!("not created") };
            assert_eq!(j.id, item.job.id, "answers are in request order");
            assert_eq!(s.get_job("ns", j.id).await.unwrap().unwrap(), j);
        }
    }

    async fn records_in_one_batch_move_only_jobs_whose_lease_holds(b: Backend) {
        let (s, _db) = store(b).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let Inserted::Created(j) = s.insert_job(&new_job(None, "f", 0), 0, false).await.unwrap() else { panic!() };
            ids.push(j.id);
        }
        let claimed: Vec<_> = s.claim_due(0, 0, 10, "a", 0).await.unwrap().into_iter().map(|c| c.job).collect();
        assert_eq!(claimed.len(), 5);
        let mut batch: Vec<_> = claimed
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let state = if i % 2 == 0 { JobState::Succeeded } else { JobState::Scheduled };
                (record(j, "a", state, 50), j.version)
            })
            .collect();
        // Two records that lost their lease: another owner, and a stale version.
        batch[3].0.lease_owner = "someone-else".into();
        batch[4].1 -= 1;
        let moved = s.record_attempts(&batch).await.unwrap();
        assert_eq!(moved, vec![true, true, true, false, false]);
        let j0 = s.get_job("ns", claimed[0].id).await.unwrap().unwrap();
        assert_eq!((j0.state, j0.next_attempt_at, j0.last_status, j0.lease_owner), (JobState::Succeeded, None, Some(500), None));
        let j1 = s.get_job("ns", claimed[1].id).await.unwrap().unwrap();
        assert_eq!((j1.state, j1.next_attempt_at, j1.last_attempt_at), (JobState::Scheduled, Some(150), Some(50)));
        for lost in &claimed[3..] {
            assert_eq!(s.get_job("ns", lost.id).await.unwrap().unwrap().state, JobState::InFlight);
        }
        // Every attempt is history, moved or not.
        for id in ids {
            assert_eq!(s.list_attempts(id, None, 10).await.unwrap().len(), 1);
        }
    }

    async fn claim_ahead_takes_work_due_soon_but_not_unexpired_leases(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(soon) = s.insert_job(&new_job(None, "f", 120), 0, false).await.unwrap() else { panic!() };
        s.insert_job(&new_job(None, "f", 200), 0, false).await.unwrap();
        let got = s.claim_due(100, 150, 10, "a", 500).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].job.id, got[0].fire_at), (soon.id, 120));
        // The lease runs from the end of the window: 150 + timeout 1 000 + grace 500.
        assert_eq!(got[0].job.next_attempt_at, Some(1_650));
        // A window reaching past that lease does not take it before it has expired.
        assert_eq!(s.claim_due(1_600, 5_000, 10, "b", 500).await.unwrap().len(), 1);
        let again = s.claim_due(1_650, 5_000, 10, "b", 500).await.unwrap();
        assert_eq!((again.len(), again[0].job.id, again[0].job.attempts), (1, soon.id, 1));
    }

    async fn a_lease_given_back_before_its_due_time_keeps_the_due_time(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(job) = s.insert_job(&new_job(None, "f", 130), 0, false).await.unwrap() else { panic!() };
        assert_eq!(s.claim_due(100, 150, 10, "a", 0).await.unwrap().len(), 1);
        assert_eq!(s.release_leases("a", 110).await.unwrap(), 1);
        let j = s.get_job("ns", job.id).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts, j.next_attempt_at), (JobState::Scheduled, 0, Some(130)));
    }

    async fn one_bad_write_in_a_group_commit_batch_fails_alone(b: Backend) {
        let (s, _db) = store(b).await;
        let Inserted::Created(job) = s.insert_job(&new_job(None, "f", 0), 0, false).await.unwrap() else { panic!() };
        let claimed = s.claim_due(0, 0, 10, "a", 0).await.unwrap().remove(0).job;
        // An attempt of a job that does not exist breaks the attempts foreign key.
        let mut ghost = claimed.clone();
        ghost.id = Uuid::now_v7();
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.insert_job(&new_job(None, "f", 10_000), 0, false).await.is_ok() }));
        }
        let bad = { let s = s.clone(); tokio::spawn(async move { s.record_attempt(&record(&ghost, "a", JobState::Succeeded, 5), 1).await }) };
        let good = { let s = s.clone(); let c = claimed.clone(); tokio::spawn(async move { s.record_attempt(&record(&c, "a", JobState::Succeeded, 5), c.version).await }) };
        for t in tasks {
            assert!(t.await.unwrap(), "a create failed with its batch");
        }
        assert!(bad.await.unwrap().is_err());
        assert!(good.await.unwrap().unwrap());
        assert_eq!(s.get_job("ns", job.id).await.unwrap().unwrap().state, JobState::Succeeded);
    }

    async fn inserts_and_records_commit_together(b: Backend) {
        let (s, _db) = store(b).await;
        s.insert_job(&new_job(None, "f", 0), 0, false).await.unwrap();
        let claimed = s.claim_due(0, 0, 10, "a", 0).await.unwrap().remove(0).job;
        let fresh = herald::store::NewJobInsert { job: new_job(None, "g", 500), now: 1, free_finished_key: false };
        let w = s
            .write_batch(herald::store::Writes {
                inserts: std::slice::from_ref(&fresh),
                records: &[(record(&claimed, "a", JobState::Succeeded, 5), claimed.version)],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(w.inserted.as_slice(), [Inserted::Created(j)] if j.id == fresh.job.id));
        assert_eq!(w.recorded, vec![true]);
        assert_eq!(s.get_job("ns", claimed.id).await.unwrap().unwrap().state, JobState::Succeeded);
        assert_eq!(s.next_due_at().await.unwrap(), Some(500));
    }

    async fn a_claim_in_a_batch_sees_the_jobs_inserted_with_it(b: Backend) {
        let (s, _db) = store(b).await;
        let fresh: Vec<_> = (0..3)
            .map(|i| herald::store::NewJobInsert { job: new_job(None, "f", 100 + i), now: 50, free_finished_key: false })
            .collect();
        let claim = herald::store::ClaimRequest { now: 100, due_by: 101, limit: 10, owner: "a".into(), lease_grace_ms: 0 };
        let w = s
            .write_batch(herald::store::Writes {
                inserts: &fresh,
                claims: std::slice::from_ref(&claim),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(w.inserted.len(), 3);
        let claimed: Vec<_> = w.claimed[0].iter().map(|c| (c.job.id, c.fire_at)).collect();
        assert_eq!(claimed, vec![(fresh[0].job.id, 100), (fresh[1].job.id, 101)]);
        assert_eq!(s.get_job("ns", fresh[2].job.id).await.unwrap().unwrap().state, JobState::Scheduled);
    }
}
