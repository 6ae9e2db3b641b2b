//! The table as JSON, with every sample: `10-compare --json FILE`.

use super::{Outcome, Table};
use serde_json::json;

impl Table {
    /// The results as JSON: every row with its samples, and the machine.
    pub fn to_json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut row = json!({
                    "section": r.section.key(),
                    "key": r.key,
                    "name": r.name,
                    "world": r.world.key(),
                    "unit": r.unit,
                    "how": r.how,
                });
                let fields = match &r.outcome {
                    Outcome::Measured {
                        samples,
                        order,
                        summary,
                    } => json!({
                        "status": "ok",
                        "median": summary.median,
                        "min": summary.min,
                        "max": summary.max,
                        "samples": samples,
                        "order": order,
                    }),
                    Outcome::NotAvailable(why) => json!({"status": "not available", "why": why}),
                    Outcome::Failed(why) => json!({"status": "failed", "why": why}),
                };
                if let (Some(row), Some(fields)) = (row.as_object_mut(), fields.as_object()) {
                    row.extend(fields.clone());
                }
                row
            })
            .collect();
        let broken: Vec<serde_json::Value> = self
            .broken
            .iter()
            .map(|b| {
                let mut entry = serde_json::Map::new();
                entry.insert("mistake".into(), b.mistake.clone().into());
                entry.insert("says".into(), b.says.clone().into());
                for (name, count) in &b.counts {
                    entry.insert(name.to_string(), (*count).into());
                }
                serde_json::Value::Object(entry)
            })
            .collect();
        let m = &self.machine;
        let doc = json!({
            "step": "10-compare",
            "runs": self.runs,
            "trivial command": self.trivial,
            "machine": {
                "cpu": m.cpu,
                "cpus": m.cpus,
                "kernel": m.kernel,
                "under a hypervisor": m.virtualized,
                "kvm": m.kvm,
                "cgroups": m.cgroups,
                "build": m.build,
            },
            "broken": broken,
            "rows": rows,
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}
