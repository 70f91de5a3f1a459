//! One client request is one trace: router, gateway and every service it calls share the trace
//! id, with the right parent links.

mod support;

use std::collections::HashMap;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest::{Method, StatusCode};
use support::TestMesh;

fn print_tree(spans: &[SpanData], parent: SpanId, depth: usize, out: &mut String) {
    for span in spans.iter().filter(|s| s.parent_span_id == parent) {
        let attrs: Vec<String> = span
            .attributes
            .iter()
            .filter(|kv| {
                ["rpc", "service", "pool", "instance", "route", "attempt"].contains(&kv.key.as_str())
            })
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        out.push_str(&format!(
            "{}{} [{}] {}\n",
            "  ".repeat(depth),
            span.name,
            span.span_context.span_id(),
            attrs.join(" ")
        ));
        print_tree(spans, span.span_context.span_id(), depth + 1, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_router_gateway_and_services() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    mesh_core::telemetry::init_with_tracer_provider("tracing-test", provider.clone());

    let t = TestMesh::start().await;
    let (_, token, _) = t.user("trace@example.com").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let answer = t
        .call_with(
            Method::GET,
            "/v1/dashboard",
            Some(&token),
            None,
            &[("traceparent", &format!("00-{trace_id}-{client_span}-01"))],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    provider.force_flush().unwrap();

    let trace = TraceId::from_hex(trace_id).unwrap();
    let spans: Vec<SpanData> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    let mut tree = String::new();
    print_tree(&spans, SpanId::from_hex(client_span).unwrap(), 0, &mut tree);
    println!("trace {trace_id}:\n{tree}");

    let by_id: HashMap<SpanId, &SpanData> = spans.iter().map(|s| (s.span_context.span_id(), s)).collect();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let parent_name = |s: &SpanData| by_id.get(&s.parent_span_id).map(|p| p.name.to_string());

    let router = named("router.request");
    assert_eq!(router.len(), 1, "{tree}");
    assert_eq!(
        router[0].parent_span_id,
        SpanId::from_hex(client_span).unwrap(),
        "the router continues the client's trace"
    );
    let attempts = named("router.attempt");
    assert!(
        !attempts.is_empty() && attempts.iter().all(|a| parent_name(a).as_deref() == Some("router.request")),
        "{tree}"
    );
    let gateway = named("gateway.request");
    assert_eq!(gateway.len(), 1, "{tree}");
    assert_eq!(parent_name(gateway[0]).as_deref(), Some("router.attempt"), "{tree}");
    let clients = named("grpc.client");
    // quota (metering), orders, articles, analytics
    assert!(clients.len() >= 4, "{tree}");
    assert!(clients.iter().all(|c| parent_name(c).as_deref() == Some("gateway.request")), "{tree}");
    let servers = named("grpc.server");
    assert!(servers.len() >= 4, "{tree}");
    assert!(servers.iter().all(|s| parent_name(s).as_deref() == Some("grpc.client")), "{tree}");
    let services: std::collections::BTreeSet<String> = clients
        .iter()
        .flat_map(|c| {
            c.attributes.iter().filter(|kv| kv.key.as_str() == "service").map(|kv| kv.value.to_string())
        })
        .collect();
    for service in ["quota", "orders", "articles", "analytics"] {
        assert!(services.contains(service), "no client span for {service}: {tree}");
    }
    t.mesh.stop().await.unwrap();
}
