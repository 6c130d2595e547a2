// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IERC20Pull {
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title BatchPuller
/// @notice One transaction that carries token transfers from several payers (each approved this
///         contract first): a payment tx whose Transfer logs have different `from`s.
contract BatchPuller {
    /// @notice Moves `amounts[i]` of `token` from `froms[i]` to `to`, for every i, in this one call.
    function pullAll(address token, address[] calldata froms, address to, uint256[] calldata amounts)
        external
    {
        require(froms.length == amounts.length, "length mismatch");
        for (uint256 i = 0; i < froms.length; i++) {
            require(IERC20Pull(token).transferFrom(froms[i], to, amounts[i]), "transfer failed");
        }
    }
}
