// The test shop's behaviour: what the browser users' tests check through the page itself.
"use strict";
const form = document.getElementById("search");
const query = document.getElementById("q");
const result = document.getElementById("result");
const counter = document.getElementById("counter");

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  result.textContent = "searched: " + query.value;
});

counter.addEventListener("click", () => {
  counter.textContent = String(Number(counter.textContent) + 1);
});

fetch("/api/items").then((r) => r.json()).then((items) => {
  const ul = document.getElementById("items");
  for (const it of items) {
    const li = document.createElement("li");
    li.className = "item";
    li.textContent = it.name + " " + it.price.toFixed(2);
    ul.appendChild(li);
  }
  // appears a little after the list: something for wait_for to wait for
  setTimeout(() => {
    const p = document.createElement("p");
    p.id = "late";
    p.textContent = "loaded " + items.length + " items";
    document.body.appendChild(p);
  }, 300);
});
