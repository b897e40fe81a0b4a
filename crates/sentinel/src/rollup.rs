//! A usage rollup computed in one pass over the rows of a window (pure: the embedded store feeds
//! it from one index scan instead of running one query per ranking, which made a week of a
//! million events take seconds).

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use crate::store::{
    ActorUsage, Bucket, Counts, KeyCount, SeriesPoint, ServerUsage, ToolUsage, UsageTotals,
    bucket_start, full_series,
};

/// One stored event, as the rollup reads it.
pub struct Row<'a> {
    pub time_ns: i64,
    pub decision: Option<&'a str>,
    pub count: u64,
    pub server: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub human: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub session: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// Small integer ids for the strings of a window: rows are counted without allocating.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn id(&mut self, name: Option<&str>) -> Option<u32> {
        let name = name?;
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }

    fn name(&self, id: Option<u32>) -> Option<String> {
        id.map(|i| self.names[i as usize].clone())
    }
}

fn add(c: &mut Counts, decision: Option<&str>, count: u64) {
    if let Some(d) = decision {
        c.decisions += count;
        match d {
            "allow" => c.allowed += count,
            "deny" => c.denied += count,
            _ => {}
        }
    }
}

#[derive(Default)]
struct Ranked {
    counts: Counts,
    a: HashSet<u32>,
    b: HashSet<u32>,
    last_ns: i64,
}

impl Ranked {
    fn add(&mut self, row: &Row<'_>, a: Option<u32>, b: Option<u32>) {
        add(&mut self.counts, row.decision, row.count);
        self.a.extend(a);
        self.b.extend(b);
        self.last_ns = self.last_ns.max(row.time_ns);
    }
}

/// What a rollup adds up; [`Rollup::finish`] turns it into the parts of a `Usage`.
#[derive(Default)]
pub struct Rollup {
    names: Names,
    events: u64,
    totals: Counts,
    servers_seen: HashSet<u32>,
    humans: HashSet<u32>,
    agents: HashSet<u32>,
    sessions: HashSet<u32>,
    servers: HashMap<(u32, Option<u32>), Ranked>,
    actors: HashMap<(Option<u32>, Option<u32>), Ranked>,
    tools: HashMap<(Option<u32>, u32), Ranked>,
    decisions: HashMap<u32, u64>,
    reasons: HashMap<u32, u64>,
    series: HashMap<i64, Counts>,
}

/// The rollup's parts, rankings cut to the limit.
pub struct Parts {
    pub totals: UsageTotals,
    pub servers: Vec<ServerUsage>,
    pub actors: Vec<ActorUsage>,
    pub tools: Vec<ToolUsage>,
    pub decisions: Vec<KeyCount>,
    pub reasons: Vec<KeyCount>,
    pub series: Vec<SeriesPoint>,
}

fn timestamp(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Most decisions first, then by key: the order the SQL stores use.
fn ranked<K: Ord + Clone, T>(
    map: HashMap<K, Ranked>,
    names: &Names,
    limit: usize,
    key: impl Fn(&K, &Names) -> (Vec<Option<String>>, K),
    build: impl Fn(Vec<Option<String>>, Ranked) -> T,
) -> Vec<T> {
    let mut rows: Vec<(Vec<Option<String>>, Ranked)> = map
        .into_iter()
        .map(|(k, r)| (key(&k, names).0, r))
        .collect();
    rows.sort_by(|(ka, a), (kb, b)| {
        b.counts
            .decisions
            .cmp(&a.counts.decisions)
            .then_with(|| ka.cmp(kb))
    });
    rows.truncate(limit);
    rows.into_iter().map(|(k, r)| build(k, r)).collect()
}

fn keyed(map: HashMap<u32, u64>, names: &Names, limit: usize) -> Vec<KeyCount> {
    let mut rows: Vec<KeyCount> = map
        .into_iter()
        .map(|(k, decisions)| KeyCount {
            key: names.name(Some(k)).unwrap_or_default(),
            decisions,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.decisions
            .cmp(&a.decisions)
            .then_with(|| a.key.cmp(&b.key))
    });
    rows.truncate(limit);
    rows
}

impl Rollup {
    pub fn add(&mut self, row: &Row<'_>, bucket: Bucket) {
        let n = &mut self.names;
        let (server, namespace, human, agent, session, tool) = (
            n.id(row.server),
            n.id(row.namespace),
            n.id(row.human),
            n.id(row.agent),
            n.id(row.session),
            n.id(row.tool),
        );
        self.events += 1;
        add(&mut self.totals, row.decision, row.count);
        self.servers_seen.extend(server);
        self.humans.extend(human);
        self.agents.extend(agent);
        self.sessions.extend(session);
        if let Some(s) = server {
            self.servers
                .entry((s, namespace))
                .or_default()
                .add(row, human, agent);
        }
        if human.is_some() || agent.is_some() {
            self.actors
                .entry((human, agent))
                .or_default()
                .add(row, server, tool);
        }
        if let Some(t) = tool {
            self.tools
                .entry((server, t))
                .or_default()
                .add(row, None, None);
        }
        if let Some(d) = row.decision {
            let d = self.names.id(Some(d)).unwrap_or_default();
            *self.decisions.entry(d).or_default() += row.count;
            if let Some(r) = self.names.id(row.reason) {
                *self.reasons.entry(r).or_default() += row.count;
            }
        }
        let start = bucket_start(timestamp(row.time_ns), bucket).as_second();
        add(
            self.series.entry(start).or_default(),
            row.decision,
            row.count,
        );
    }

    pub fn finish(self, since: Timestamp, until: Timestamp, bucket: Bucket, limit: usize) -> Parts {
        let names = &self.names;
        let totals = UsageTotals {
            events: self.events,
            counts: self.totals,
            servers: self.servers_seen.len() as u64,
            humans: self.humans.len() as u64,
            agents: self.agents.len() as u64,
            sessions: self.sessions.len() as u64,
        };
        let servers = ranked(
            self.servers,
            names,
            limit,
            |(s, ns), n| (vec![n.name(Some(*s)), n.name(*ns)], (*s, *ns)),
            |k, r| ServerUsage {
                server: k[0].clone().unwrap_or_default(),
                namespace: k[1].clone().unwrap_or_default(),
                humans: r.a.len() as u64,
                agents: r.b.len() as u64,
                last_seen: timestamp(r.last_ns),
                counts: r.counts,
            },
        );
        let actors = ranked(
            self.actors,
            names,
            limit,
            |(h, a), n| (vec![n.name(*h), n.name(*a)], (*h, *a)),
            |k, r| ActorUsage {
                human: k[0].clone(),
                agent: k[1].clone(),
                servers: r.a.len() as u64,
                tools: r.b.len() as u64,
                last_seen: timestamp(r.last_ns),
                counts: r.counts,
            },
        );
        let tools = ranked(
            self.tools,
            names,
            limit,
            |(s, t), n| (vec![n.name(*s), n.name(Some(*t))], (*s, *t)),
            |k, r| ToolUsage {
                server: k[0].clone().unwrap_or_default(),
                tool: k[1].clone().unwrap_or_default(),
                last_seen: timestamp(r.last_ns),
                counts: r.counts,
            },
        );
        Parts {
            totals,
            servers,
            actors,
            tools,
            decisions: keyed(self.decisions, names, limit),
            reasons: keyed(self.reasons, names, limit),
            series: full_series(since, until, bucket, &self.series),
        }
    }
}
