//! Every gRPC service answers server reflection, v1 and v1alpha, as grpcurl asks it: it lists
//! its own service, health and reflection (and nothing else of the mesh), and returns the file
//! that declares its service.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use meshctl::Kind;
use support::TestMesh;

/// The fully qualified name each kind serves, as its `.proto` declares it.
fn service_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Auth => "mesh.auth.v1.AuthService",
        Kind::User => "mesh.user.v1.UserService",
        Kind::Quota => "mesh.quota.v1.QuotaService",
        Kind::Orders => "mesh.orders.v1.OrdersService",
        Kind::Articles => "mesh.articles.v1.ArticlesService",
        Kind::Analytics => "mesh.analytics.v1.AnalyticsService",
        other => panic!("{other:?} is not a gRPC service"),
    }
}

const HEALTH: &str = "grpc.health.v1.Health";

/// What one reflection stream answered.
#[derive(Debug, Default)]
struct Reflected {
    /// `ListServices`.
    services: BTreeSet<String>,
    /// `FileContainingSymbol`, per symbol asked: the encoded `FileDescriptorProto`s.
    files: Vec<(String, Vec<Vec<u8>>)>,
}

/// `async fn $name(addr, symbols)`: one `ServerReflectionInfo` stream in version `$v` asking
/// `ListServices`, then `FileContainingSymbol` for each of `symbols`. The two versions are the
/// same protocol in two packages, so two generated clients with the same shape.
macro_rules! reflect_in {
    ($name:ident, $v:ident) => {
        async fn $name(addr: SocketAddr, symbols: &[&str]) -> Reflected {
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;

            let version = stringify!($v);
            // A real socket; the generated client has no `connect` (tonic-reflection builds it
            // without transport), so the channel is made here.
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("a valid URI")
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{addr}: cannot connect: {e}"));
            let mut client = ServerReflectionClient::new(channel);
            let requests = std::iter::once(MessageRequest::ListServices(String::new()))
                .chain(symbols.iter().map(|s| MessageRequest::FileContainingSymbol(s.to_string())))
                .map(|m| ServerReflectionRequest { host: String::new(), message_request: Some(m) })
                .collect::<Vec<_>>();
            let mut answers = client
                .server_reflection_info(tokio_stream::iter(requests))
                .await
                .unwrap_or_else(|s| panic!("{addr}: {version} reflection refused: {s:?}"))
                .into_inner();
            let mut reflected = Reflected::default();
            while let Some(answer) = answers
                .message()
                .await
                .unwrap_or_else(|s| panic!("{addr}: {version} reflection failed: {s:?}"))
            {
                let asked = answer.original_request.and_then(|r| r.message_request);
                match answer.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        reflected.services = list.service.into_iter().map(|s| s.name).collect();
                    }
                    Some(MessageResponse::FileDescriptorResponse(files)) => {
                        let Some(MessageRequest::FileContainingSymbol(symbol)) = asked else {
                            panic!("{addr}: {version}: a file answered to {asked:?}");
                        };
                        reflected.files.push((symbol, files.file_descriptor_proto));
                    }
                    other => panic!("{addr}: {version}: {other:?} answered to {asked:?}"),
                }
            }
            reflected
        }
    };
}

reflect_in!(reflect_v1, v1);
reflect_in!(reflect_v1alpha, v1alpha);

/// Checks one version's answers from the server of `service`.
fn assert_reflected(name: &str, version: &str, service: &str, reflected: &Reflected) {
    let listed: Vec<&str> = reflected.services.iter().map(String::as_str).collect();
    println!("{name} ({version}) lists {listed:?}");
    let expected: BTreeSet<String> =
        [service, HEALTH, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
            .map(String::from)
            .into();
    // Exactly what the server serves: not empty, and not every service of the mesh's contract.
    assert_eq!(reflected.services, expected, "{name} ({version})");

    let asked: Vec<&str> = reflected.files.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(asked, [service, HEALTH], "{name} ({version}): every symbol asked is answered");
    for (symbol, files) in &reflected.files {
        assert!(
            !files.is_empty() && files.iter().all(|f| !f.is_empty()),
            "{name} ({version}): an empty descriptor for {symbol}"
        );
        // The service's own short name is a string inside the file that declares it.
        let short = symbol.rsplit('.').next().unwrap();
        assert!(
            files.iter().any(|f| f.windows(short.len()).any(|w| w == short.as_bytes())),
            "{name} ({version}): the file for {symbol} does not declare {short}"
        );
        println!("{name} ({version}) FileContainingSymbol {symbol}: {} bytes", files[0].len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_answers_reflection() {
    let t = TestMesh::start().await;

    let mut kinds = BTreeSet::new();
    for component in t.mesh.components.iter().filter(|c| Kind::SERVICES.contains(&c.kind)) {
        let service = service_name(component.kind);
        let name = component.name();
        let symbols = [service, HEALTH];
        let ask = async {
            let v1 = reflect_v1(component.addr, &symbols).await;
            let v1alpha = reflect_v1alpha(component.addr, &symbols).await;
            (v1, v1alpha)
        };
        let (v1, v1alpha) = tokio::time::timeout(Duration::from_secs(10), ask)
            .await
            .unwrap_or_else(|_| panic!("{name} did not answer reflection within 10s"));
        assert_reflected(&name, "v1", service, &v1);
        assert_reflected(&name, "v1alpha", service, &v1alpha);
        kinds.insert(component.kind.name());
    }
    let all: BTreeSet<&str> = Kind::SERVICES.iter().map(|k| k.name()).collect();
    assert_eq!(kinds, all, "every kind of service was asked");
}
