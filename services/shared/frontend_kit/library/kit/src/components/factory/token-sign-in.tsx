"use client";

import { KeyRound, LogOut } from "lucide-react";
import { useEffect, useState } from "react";

import { getToken, setToken } from "../../lib/api-client";

/** Sign-in with an AOC API token, kept in this tab's sessionStorage (as the dashboard does) */
export interface TokenSignInProps {
  /** Label of the token field */
  label?: string;
}

export function TokenSignIn({ label = "API token" }: TokenSignInProps) {
  // unknown until mounted: the server cannot see this tab's storage
  const [signedIn, setSignedIn] = useState<boolean | null>(null);
  const [draft, setDraft] = useState("");

  useEffect(() => {
    setSignedIn(getToken() !== null);
  }, []);

  if (signedIn === null) {
    return null;
  }
  if (signedIn) {
    return (
      <button
        type="button"
        className="aoc-button aoc-button-secondary"
        onClick={() => {
          setToken(null);
          window.location.reload();
        }}
      >
        <LogOut aria-hidden="true" size={16} />
        Sign out
      </button>
    );
  }
  return (
    <form
      className="aoc-sign-in"
      onSubmit={(event) => {
        event.preventDefault();
        if (draft.trim() !== "") {
          setToken(draft);
          window.location.reload();
        }
      }}
    >
      <label>
        {label}
        <input type="password" autoComplete="off" value={draft} onChange={(event) => setDraft(event.target.value)} />
      </label>
      <button type="submit" className="aoc-button aoc-button-primary">
        <KeyRound aria-hidden="true" size={16} />
        Sign in
      </button>
    </form>
  );
}
