//! Reading orders over real gRPC: only the owner sees an order; lists page newest first.

mod support;

use std::collections::HashSet;

use mesh_core::ids::new_id;
use mesh_proto::orders::{GetOrderRequest, ListOrdersRequest};
use support::{Mesh, order};
use tonic::Code;

#[tokio::test]
async fn an_order_is_visible_only_to_its_owner() {
    let mut mesh = Mesh::start(1, 2).await;
    let lamp = mesh.article(2_500, 10).await;
    let owner = new_id();
    let created = mesh.clients[0].create_order(order(&owner, "k", &[(&lamp, 1)])).await.unwrap().into_inner();

    let get = |owner_id: &str, id: &str| GetOrderRequest { owner_id: owner_id.into(), id: id.into() };
    let read = mesh.clients[1].get_order(get(&owner, &created.id)).await.unwrap().into_inner();
    assert_eq!(read, created, "any replica answers");

    let stranger = mesh.clients[1].get_order(get(&new_id(), &created.id)).await.unwrap_err();
    let unknown = mesh.clients[1].get_order(get(&owner, &new_id())).await.unwrap_err();
    assert_eq!((stranger.code(), unknown.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(stranger.message(), unknown.message(), "no hint that the order exists");

    let malformed = mesh.clients[1].get_order(get(&owner, "../order")).await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn orders_are_listed_newest_first_across_pages() {
    const ORDERS: usize = 7;
    let mut mesh = Mesh::start(1, 2).await;
    let lamp = mesh.article(2_500, 100).await;
    let owner = new_id();
    let mut ids = Vec::new();
    for i in 0..ORDERS {
        let req = order(&owner, &format!("k{i}"), &[(&lamp, 1)]);
        ids.push(mesh.clients[0].create_order(req).await.unwrap().into_inner().id);
    }
    // Someone else's order is not in the owner's list.
    mesh.clients[0].create_order(order(&new_id(), "k0", &[(&lamp, 1)])).await.unwrap();
    ids.sort_by(|a, b| b.cmp(a)); // ids are time-ordered: newest first is descending

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut cursor = String::new();
    for page_no in 0..ORDERS {
        let req = ListOrdersRequest { owner_id: owner.clone(), limit: 3, cursor };
        let page = mesh.clients[page_no % 2].list_orders(req).await.unwrap().into_inner();
        pages.push(page.orders.len());
        assert!(page.orders.iter().all(|o| o.owner_id == owner));
        seen.extend(page.orders.into_iter().map(|o| o.id));
        cursor = page.next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    println!("{ORDERS} orders listed 3 at a time over two replicas: pages of {pages:?}");
    assert_eq!(pages, [3, 3, 1]);
    assert_eq!(seen, ids, "newest first, every order once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), ORDERS);

    let bad = ListOrdersRequest { owner_id: owner.clone(), limit: 3, cursor: "page-2".into() };
    assert_eq!(mesh.clients[0].list_orders(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let too_many = ListOrdersRequest { owner_id: owner, limit: 101, cursor: String::new() };
    assert_eq!(mesh.clients[0].list_orders(too_many).await.unwrap_err().code(), Code::InvalidArgument);
}
