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

/// An OTLP/http collector on a loopback port: every `POST /v1/traces` body, decoded.
async fn otlp_http_collector() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    >,
) {
    use axum::body::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        let _ = tx.send(request);
                        // An empty ExportTraceServiceResponse: everything accepted.
                        (StatusCode::OK, [("content-type", "application/x-protobuf")], Vec::new())
                    }
                    Err(_) => {
                        (StatusCode::BAD_REQUEST, [("content-type", "text/plain")], b"not OTLP".to_vec())
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

/// The resource attributes of the first exported batch that holds a `router.request` span.
async fn exported_resource(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    >,
) -> HashMap<String, String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    // The batch processor exports every OTEL_BSP_SCHEDULE_DELAY (set to 100 ms below).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let request = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("no router.request span exported within 15 s")
            .expect("the collector runs");
        for spans in request.resource_spans {
            let has_request_span =
                spans.scope_spans.iter().flat_map(|s| &s.spans).any(|s| s.name == "router.request");
            if !has_request_span {
                continue;
            }
            return spans
                .resource
                .into_iter()
                .flat_map(|r| r.attributes)
                .filter_map(|kv| match kv.value.and_then(|v| v.value) {
                    Some(Value::StringValue(s)) => Some((kv.key, s)),
                    _ => None,
                })
                .collect();
        }
    }
}

/// A real router process, exporting over OTLP/http to the test's collector with `env` added.
async fn router_exporting(
    collector: std::net::SocketAddr,
    env: &[(&str, &str)],
) -> mesh_tests::process::ServiceProcess {
    let endpoint = format!("http://{collector}");
    let mut all = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("MESH_POOLS__IDENTITY__INSTANCES", "127.0.0.1:9"),
        ("MESH_POOLS__BUSINESS__INSTANCES", "127.0.0.1:9"),
    ];
    all.extend_from_slice(env);
    let router =
        mesh_tests::process::ServiceProcess::start(mesh_tests::process::binary("gateway-router"), &all)
            .expect("the router starts");
    // One request, so there is a span to export (a refusal is a request too).
    let answer = reqwest::get(format!("http://{}/no-such-route", router.addr)).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    router
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_service_name_is_honoured() {
    // OTEL_SERVICE_NAME names the service, over the component's name; the default protocol is
    // http/protobuf (the spec's), which is what the collector speaks.
    let (collector, mut rx) = otlp_http_collector().await;
    let router = router_exporting(
        collector,
        &[
            ("OTEL_SERVICE_NAME", "edge-router-eu"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging"),
        ],
    )
    .await;
    let resource = exported_resource(&mut rx).await;
    println!("exported resource: {resource:?}");
    assert_eq!(resource.get("service.name").map(String::as_str), Some("edge-router-eu"), "{resource:?}");
    assert_eq!(resource.get("deployment.environment").map(String::as_str), Some("staging"), "{resource:?}");
    assert_eq!(resource.get("service.version").map(String::as_str), Some(mesh_core::telemetry::VERSION));
    drop(router);

    // service.name in OTEL_RESOURCE_ATTRIBUTES, with the signal's own protocol variable.
    let (collector, mut rx) = otlp_http_collector().await;
    let router = router_exporting(
        collector,
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,service.version=9.9.9"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;
    let resource = exported_resource(&mut rx).await;
    assert_eq!(resource.get("service.name").map(String::as_str), Some("from-attributes"), "{resource:?}");
    assert_eq!(
        resource.get("service.version").map(String::as_str),
        Some("9.9.9"),
        "the environment's version wins"
    );
    drop(router);

    // Neither: the component's own name.
    let (collector, mut rx) = otlp_http_collector().await;
    let router = router_exporting(collector, &[]).await;
    let resource = exported_resource(&mut rx).await;
    assert_eq!(resource.get("service.name").map(String::as_str), Some("gateway-router"), "{resource:?}");
    drop(router);
}

/// An OTLP/gRPC collector on a loopback port: every `TraceService/Export` request.
async fn otlp_grpc_collector() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    >,
) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };

    struct Collector(tokio::sync::mpsc::UnboundedSender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
        }
    }

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_grpc_when_the_protocol_says_so() {
    let (collector, mut rx) = otlp_grpc_collector().await;
    let router = router_exporting(
        collector,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_SERVICE_NAME", "over-grpc")],
    )
    .await;
    let resource = exported_resource(&mut rx).await;
    assert_eq!(resource.get("service.name").map(String::as_str), Some("over-grpc"), "{resource:?}");
    drop(router);
}
