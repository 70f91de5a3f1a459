//! Reading server-sent event streams in tests: a streaming GET and an event parser.

use std::time::Duration;

use mesh_proto::analytics::RecordEventRequest;
use mesh_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use meshctl::Kind;
use reqwest::StatusCode;

use super::TestMesh;

/// One parsed event (comments, i.e. keep-alives, are counted apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) data: String,
}

/// An open event stream.
pub(crate) struct SseStream {
    pub(crate) response: reqwest::Response,
    buffer: String,
    /// Comment lines seen so far (keep-alives).
    pub(crate) comments: usize,
}

impl SseStream {
    /// Opens `GET <base><path>` as `token`, with extra `headers`; panics unless 200.
    pub(crate) async fn open(base: &str, path: &str, token: &str, headers: &[(&str, &str)]) -> Self {
        let response = Self::request(base, path, token, headers).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.headers());
        Self { response, buffer: String::new(), comments: 0 }
    }

    /// The raw answer, whatever its status. No whole-request timeout: streams live long.
    pub(crate) async fn request(
        base: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let client = reqwest::Client::builder().build().unwrap();
        let mut req = client.get(format!("{base}{path}")).bearer_auth(token);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("stream request sent")
    }

    /// The next event within `within`; `None` if none came (or the stream ended).
    pub(crate) async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?;
            let chunk = chunk.ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8 stream"));
        }
    }

    /// Whether the server ends the stream within `within` (events until then are skipped).
    pub(crate) async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => return true,
            }
        }
    }

    fn parse_one(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent::default();
            let mut has_field = false;
            for line in block.lines().filter(|l| !l.is_empty()) {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                has_field = true;
                match name {
                    "id" => event.id = value.to_owned(),
                    "event" => event.event = value.to_owned(),
                    "data" => event.data.push_str(value),
                    _ => {}
                }
            }
            if has_field {
                return Some(event);
            }
        }
    }
}

/// A gRPC client to analytics replica `replica` (1-based), bypassing gateways and balancing.
pub(crate) async fn analytics_replica(
    t: &TestMesh,
    replica: u16,
) -> AnalyticsServiceClient<tonic::transport::Channel> {
    let addr = t.mesh.get(Kind::Analytics, replica).addr;
    AnalyticsServiceClient::new(mesh_tests::grpc_channel(addr).await.expect("analytics replica reachable"))
}

pub(crate) fn event(owner: &str, kind: &str, properties: &[(&str, &str)]) -> RecordEventRequest {
    RecordEventRequest {
        owner_id: owner.to_owned(),
        r#type: kind.to_owned(),
        properties: properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

/// The value of an unlabelled metric in a Prometheus text scrape (0 when absent).
pub(crate) fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(" "))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum::<f64>()
        + 0.0
}
